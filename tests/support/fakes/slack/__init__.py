"""A local fake of Slack that the *real* slack-bolt / slack_sdk talk to.

Start it, point an ``AsyncWebClient(base_url=fake.base_url)`` (and so Bolt and Socket
Mode) at it, and drive a "person" from the test::

    async with FakeSlack() as fake:
        general = fake.add_channel("C0GENERAL", "general", members=[ADA])
        ...                                              # start the app under test
        fake.user_message(general, ADA, "!new ~/code/app hi")
        reply = await fake.wait_for(lambda m: "session" in m.visible_text, channel=general)
        fake.click(reply, "Allow", user=ADA)

Its modules, one concern each: `server` (the aiohttp app, lifecycle, the world the test
sets up, HTTP plumbing and `FakeSlack` itself), `webapi` (the Web API methods),
`formatting` (mrkdwn and Block Kit rules), `state` (messages, files, channels,
deliveries), `deliveries` (Socket Mode and signed HTTP), `person` (the person and the
transcript), `limits` (rate limits, on the shared `..ratelimit`), `errors`, `faults`.

What it models (real HTTP and WebSocket on 127.0.0.1, a free port, aiohttp.web):

* Web API: ``POST|GET /api/<method>`` with query, form, multipart or JSON bodies
  (Slack accepts all), the token as ``Authorization: Bearer`` or a ``token``
  parameter; answers ``{"ok": true, ...}`` or ``{"ok": false, "error": ...}`` with
  HTTP 200, ``x-oauth-scopes`` on every bot-token answer, 429 with ``Retry-After``
  when rate limited, 5xx on outages.  Methods: ``auth.test``, ``apps.connections.open``
  (app token only), ``chat.postMessage``, ``chat.update``, ``chat.delete``,
  ``chat.postEphemeral``, ``chat.startStream`` / ``appendStream`` / ``stopStream``,
  ``files.getUploadURLExternal`` + the upload URL + ``files.completeUploadExternal``
  (what ``files_upload_v2`` does), ``assistant.threads.setStatus``,
  ``conversations.info``, ``users.info``; anything else is ``unknown_method``.
* Limits and strict errors (Slack's documented ones): 50 blocks, section text 3000, context 10
  elements, actions 25 elements, button text 75 / value 2000 / action_id 255 (unique
  per message), a known block type and text-object shape (else ``invalid_blocks``),
  more than 12,000 characters of block text (button labels included) →
  ``msg_blocks_too_long``, ``text`` over 40,000 → ``msg_too_long``, neither text nor
  blocks → ``no_text``; ``channel_not_found``, ``not_in_channel``, ``is_archived``,
  ``thread_not_found`` (a reply to a missing or deleted parent), ``message_not_found``,
  ``cant_update_message``, ``invalid_auth`` / ``not_authed``, ``missing_scope``.
  Streams: 12,000 markdown characters per call, ``recipient_user_id`` and
  ``recipient_team_id`` required (``missing_recipient_*``), a stream ends after
  ``stream_lifetime`` s (``message_not_in_streaming_state``); ``streaming=False``
  makes ``chat.startStream`` answer ``feature_not_enabled`` (fake's wording).
* Rate limits (:class:`RateLimits`, on by default): per channel a token bucket for new
  messages (``chat.postMessage`` and file shares; 1/s, burst 3); per workspace
  sliding minutes for ``chat.update`` / ``chat.delete`` (50), ``chat.appendStream``
  (100), ``chat.startStream`` / ``chat.stopStream`` (20).  Only successful calls count.
* Socket Mode: ``apps.connections.open`` → ``ws://…/link/?ticket=…`` (single use);
  ``hello``; envelopes ``events_api`` / ``interactive`` / ``slash_commands`` with
  ``envelope_id``; acks (``{"envelope_id", "payload"?}``, accepted on any connection);
  an ``events_api`` envelope not acked within ``ack_timeout`` or left unacked on a
  closed connection is redelivered (``retry_attempt``, at most 3 retries);
  :meth:`FakeSlack.refresh` sends ``{"type": "disconnect", "reason":
  "refresh_requested"}``, routes nothing more to that connection and closes it after
  ``disconnect_grace`` s.
* HTTP mode (:meth:`FakeSlack.set_request_url`): events as JSON, interactivity as
  form ``payload=``, slash commands as form fields, signed with ``X-Slack-Signature``
  / ``X-Slack-Request-Timestamp``; an event not answered 2xx within ``ack_timeout`` is
  retried with ``X-Slack-Retry-Num`` / ``X-Slack-Retry-Reason``;
  :meth:`FakeSlack.lose_acks` makes the next answers count as lost (forcing retries);
  :meth:`FakeSlack.deliver_raw` posts any body with any signature.
* A person (Python methods): :meth:`user_message`, :meth:`user_edit`,
  :meth:`user_join`, :meth:`bot_message`, :meth:`slash`, :meth:`click`; a transcript:
  :meth:`messages`, :meth:`message`, :meth:`ephemerals`, ``files``, ``downloads``, ``statuses``,
  ``calls``, ``count_429``, ``deliveries``, :meth:`wait_for`, :meth:`wait_until`;
  faults: :meth:`fail_next`, :meth:`set_outage`.

Not modelled: OAuth and installs, user tokens, Enterprise Grid, modals and views,
shortcuts, message attachments (legacy), reactions, pins, scheduled messages, rich
text input from the person (``text`` only), unfurls, the exact text of errors Slack
does not document (marked "fake's wording").
"""

from __future__ import annotations

from .formatting import check_blocks, mrkdwn_plain
from .limits import RateLimits
from .server import FakeSlack
from .state import (
    APP_ID,
    BOT_ID,
    BOT_USER,
    TEAM_ID,
    ApiCall,
    Delivery,
    FakeFile,
    FakeMessage,
    Version,
)

__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_USER",
    "TEAM_ID",
    "ApiCall",
    "Delivery",
    "FakeFile",
    "FakeMessage",
    "FakeSlack",
    "RateLimits",
    "Version",
    "check_blocks",
    "mrkdwn_plain",
]
