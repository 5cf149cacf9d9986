"""Local fakes that speak the real wire protocols: the Anthropic Messages API (`anthropic`,
with `claude_env` for the CLI's environment), the Telegram Bot API (`telegram/`), Slack
(`slack/`), a fault-injecting proxy for Synapse (`fault_proxy`), and the rate limiter the
platform fakes share (`ratelimit`)."""
