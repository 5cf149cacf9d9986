"""The fake Slack against the real slack_sdk: what it accepts, what it refuses and how
(the errors and limits Slack's Web API documents), its rate limits, streams, uploads, Socket Mode
(hello, envelopes, acks, redelivery, refresh) and signed HTTP delivery with retries."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from tests.support.fakes.slack import BOT_USER, TEAM_ID, FakeSlack

pytestmark = pytest.mark.timeout(60)

ADA = "U0ADA00001"
CH = "C0GENERAL1"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(ack_timeout=0.5, retry_delays=(0.0, 0.1, 0.1)) as f:
        f.add_user(ADA, "Ada")
        f.add_channel(CH, "general", members=[ADA])
        yield f


@pytest.fixture
async def web_client(fake: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    async with aiohttp.ClientSession() as session:
        yield AsyncWebClient(token=fake.bot_token, base_url=fake.base_url, session=session)


async def error_of(call: Any) -> tuple[str, int]:
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value.response.get("error") or "", info.value.response.status_code


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(label: str, value: str = "v", action_id: str = "a1") -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "value": value,
        "action_id": action_id,
    }


async def test_auth_test_and_scopes_header(fake: FakeSlack, web_client: AsyncWebClient) -> None:
    resp = await web_client.auth_test()
    assert resp["user_id"] == BOT_USER and resp["team_id"] == TEAM_ID
    assert "chat:write" in resp.headers["x-oauth-scopes"]
    bad = AsyncWebClient(token="xoxb-wrong", base_url=fake.base_url)
    assert await error_of(bad.auth_test()) == ("invalid_auth", 200)
    assert await error_of(web_client.apps_connections_open(app_token=fake.bot_token)) == (
        "not_allowed_token_type",
        200,
    )


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing:UserWarning")
async def test_post_update_delete_and_their_errors(
    fake: FakeSlack, web_client: AsyncWebClient
) -> None:
    sent = await web_client.chat_postMessage(channel=CH, text="hi", blocks=[section("*hi*")])
    msg = fake.message(CH, sent["ts"])
    assert msg.is_bot and msg.visible_text == "*hi*"
    reply = await web_client.chat_postMessage(channel=CH, text="in thread", thread_ts=sent["ts"])
    assert fake.messages(CH, sent["ts"])[0].ts == reply["ts"]
    await web_client.chat_update(channel=CH, ts=sent["ts"], text="edited", blocks=[section("v2")])
    await web_client.chat_update(channel=CH, ts=sent["ts"], text="edited", blocks=[section("v2")])
    assert msg.edit_count == 2, "an identical update is accepted, as Slack does"
    await web_client.chat_delete(channel=CH, ts=sent["ts"])
    assert msg.deleted
    for call, expected in [
        (web_client.chat_update(channel=CH, ts=sent["ts"], text="x"), "message_not_found"),
        (
            web_client.chat_postMessage(channel=CH, text="x", thread_ts=sent["ts"]),
            "thread_not_found",
        ),
        (web_client.chat_postMessage(channel="C0NOPE", text="x"), "channel_not_found"),
        (web_client.chat_postMessage(channel=CH), "no_text"),
        (web_client.chat_postMessage(channel=CH, text="x" * 40_001), "msg_too_long"),
    ]:
        assert (await error_of(call))[0] == expected
    fake.add_channel("C0OUTSIDE", "outside", bot_member=False)
    assert (await error_of(web_client.chat_postMessage(channel="C0OUTSIDE", text="x")))[0] == (
        "not_in_channel"
    )


@pytest.mark.parametrize(
    ("blocks", "error"),
    [
        ([section("x")] * 51, "invalid_blocks"),
        ([section("x" * 3001)], "invalid_blocks"),
        ([{"type": "actions", "elements": [button("x" * 76)]}], "invalid_blocks"),
        ([{"type": "actions", "elements": [button("ok", "v" * 2001)]}], "invalid_blocks"),
        ([{"type": "actions", "elements": [button("ok", action_id="a" * 256)]}], "invalid_blocks"),
        ([{"type": "actions", "elements": [button("a"), button("b")]}], "invalid_blocks"),
        (
            [{"type": "section", "text": {"type": "mrkdwn", "text": "x", "emoji": True}}],
            "invalid_blocks",
        ),
        ([{"type": "carousel"}], "invalid_blocks"),
        ([section("x" * 3000)] * 5, "msg_blocks_too_long"),
    ],
)
async def test_block_kit_limits(web_client: AsyncWebClient, blocks: list[Any], error: str) -> None:
    assert (await error_of(web_client.chat_postMessage(channel=CH, text="t", blocks=blocks)))[
        0
    ] == error


async def test_post_rate_limit_per_channel_and_update_window(
    fake: FakeSlack, web_client: AsyncWebClient
) -> None:
    for i in range(3):
        await web_client.chat_postMessage(channel=CH, text=f"burst {i}")
    with pytest.raises(SlackApiError) as info:
        await web_client.chat_postMessage(channel=CH, text="one too many")
    assert (
        info.value.response.status_code == 429 and info.value.response.headers["Retry-After"] == "1"
    )
    assert fake.count_429 == 1
    fake.add_channel("C0OTHER", "other")
    await web_client.chat_postMessage(channel="C0OTHER", text="another channel has its own budget")
    await asyncio.sleep(1.05)
    await web_client.chat_postMessage(channel=CH, text="a token came back")
    fake.set_rate_limits(window_s=60.0, per_minute={"chat.update": 2})
    ts = fake.messages(CH)[0].ts
    await web_client.chat_update(channel=CH, ts=ts, text="1")
    await web_client.chat_update(channel=CH, ts=ts, text="2")
    assert (await error_of(web_client.chat_update(channel=CH, ts=ts, text="3")))[1] == 429


async def test_streams(fake: FakeSlack, web_client: AsyncWebClient) -> None:
    parent = await web_client.chat_postMessage(channel=CH, text="question")
    kw = {"channel": CH, "thread_ts": parent["ts"]}
    assert (await error_of(web_client.chat_startStream(**kw, markdown_text="x")))[0] == (
        "missing_recipient_user_id"
    )
    who = {"recipient_user_id": ADA, "recipient_team_id": TEAM_ID}
    started = await web_client.chat_startStream(**kw, **who, markdown_text="Hello ")
    await web_client.chat_appendStream(channel=CH, ts=started["ts"], markdown_text="**world**")
    assert (
        await error_of(
            web_client.chat_appendStream(channel=CH, ts=started["ts"], markdown_text="x" * 12_001)
        )
    )[0] == "msg_too_long"
    await web_client.chat_stopStream(channel=CH, ts=started["ts"])
    [stream] = fake.stream_messages(CH)
    assert stream.text == "Hello **world**" and stream.stream_state == "stopped"
    assert stream.thread_ts == parent["ts"] and stream.stream_chunks == ["Hello ", "**world**"]
    assert (
        await error_of(
            web_client.chat_appendStream(channel=CH, ts=started["ts"], markdown_text="late")
        )
    )[0] == "message_not_in_streaming_state"
    fake.stream_lifetime = 0.0
    second = await web_client.chat_startStream(**kw, **who, markdown_text="again ")
    assert (
        await error_of(web_client.chat_appendStream(channel=CH, ts=second["ts"], markdown_text="x"))
    )[0] == "message_not_in_streaming_state"
    fake.streaming = False
    assert (await error_of(web_client.chat_startStream(**kw, **who, markdown_text="x")))[
        0
    ] == "feature_not_enabled"


async def test_files_upload_v2_and_status_and_ephemeral(
    fake: FakeSlack, web_client: AsyncWebClient
) -> None:
    parent = await web_client.chat_postMessage(channel=CH, text="here")
    done = await web_client.files_upload_v2(
        channel=CH,
        thread_ts=parent["ts"],
        content=b"+added\n",
        filename="x.diff",
        title="x.diff",
        initial_comment="the diff",
    )
    f = fake.files[done["file"]["id"]]
    assert f.data == b"+added\n" and f.channel == CH and f.thread_ts == parent["ts"]
    [shared] = fake.messages(CH, parent["ts"])
    assert shared.subtype == "file_share" and shared.text == "the diff"
    await web_client.assistant_threads_setStatus(
        channel_id=CH, thread_ts=parent["ts"], status="is thinking…"
    )
    assert fake.statuses[-1].status == "is thinking…"
    await web_client.chat_postEphemeral(channel=CH, user=ADA, text="only you")
    assert fake.ephemerals(ADA)[0].text == "only you"
    fake.scopes.remove("assistant:write")
    assert (
        await error_of(
            web_client.assistant_threads_setStatus(
                channel_id=CH, thread_ts=parent["ts"], status="x"
            )
        )
    )[0] == "missing_scope"


async def test_faults_and_outages(fake: FakeSlack, web_client: AsyncWebClient) -> None:
    fake.fail_next("chat.postMessage", error="ratelimited", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as info:
        await web_client.chat_postMessage(channel=CH, text="x")
    assert info.value.response.headers["Retry-After"] == "7"
    fake.fail_next("chat.postMessage", status=503)
    assert (await error_of(web_client.chat_postMessage(channel=CH, text="x")))[1] == 503
    fake.fail_next(
        "chat.postMessage", error="invalid_blocks", match=lambda p: p.get("text") == "bad"
    )
    await web_client.chat_postMessage(channel=CH, text="good")
    assert (await error_of(web_client.chat_postMessage(channel=CH, text="bad")))[
        0
    ] == "invalid_blocks"
    fake.set_outage(True)
    assert (await error_of(web_client.auth_test()))[1] == 503


async def test_socket_mode_envelopes_acks_redelivery_and_refresh(
    fake: FakeSlack, web_client: AsyncWebClient
) -> None:
    client = SocketModeClient(app_token=fake.app_token, web_client=web_client, ping_interval=5)
    seen: list[tuple[str, int]] = []

    async def listener(c: SocketModeClient, req: SocketModeRequest) -> None:
        seen.append((req.type, req.retry_attempt or 0))
        if req.type == "events_api" and req.payload["event"].get("text") == "ignored once":
            if req.retry_attempt == 0:
                return  # no ack: Slack redelivers
        await c.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))

    client.socket_mode_request_listeners.append(listener)  # type: ignore[arg-type]
    try:
        await client.connect()
        await fake.wait_until(lambda: fake.hello_count == 1)
        d1 = fake.user_message(CH, ADA, "hello")
        await asyncio.wait_for(fake.deliveries[0].acked.wait(), 5)
        assert d1.text == "hello" and seen[0] == ("events_api", 0)
        fake.user_message(CH, ADA, "ignored once")
        await fake.wait_until(lambda: ("events_api", 1) in seen, 5)
        assert fake.deliveries[1].retry_reason == "timeout"
        fake.slash(CH, ADA, "help")
        await asyncio.wait_for(fake.deliveries[2].acked.wait(), 5)
        await fake.refresh()
        fake.user_message(CH, ADA, "during the refresh")
        await fake.wait_until(lambda: fake.hello_count == 2, 10)
        await asyncio.wait_for(fake.deliveries[3].acked.wait(), 10)
        assert fake.deliveries[3].conn == 2, "new envelopes go to the new connection"
    finally:
        await client.close()


async def test_http_delivery_is_signed_and_retried(fake: FakeSlack) -> None:
    verifier = SignatureVerifier(fake.signing_secret)
    got: list[tuple[dict[str, str], str]] = []
    slow = {"first": True}

    async def handler(request: web.Request) -> web.Response:
        body = await request.text()
        headers = dict(request.headers)
        ts, signature = headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
        if not verifier.is_valid(body, ts, signature):
            return web.Response(status=401)
        got.append((headers, body))
        if slow["first"]:
            slow["first"] = False
            await asyncio.sleep(1.0)  # longer than ack_timeout: Slack gives up and retries
        return web.Response(text="")

    app = web.Application()
    app.router.add_post("/slack/events", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        fake.set_request_url(f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events")
        fake.user_message(CH, ADA, "over http")
        await asyncio.wait_for(fake.deliveries[0].acked.wait(), 5)
        assert [h.get("X-Slack-Retry-Num") for h, _ in got] == [None, "1"]
        assert got[1][0]["X-Slack-Retry-Reason"] == "http_timeout"
        assert json.loads(got[0][1])["event"]["text"] == "over http"
        fake.click(fake.messages(CH, by_bot=False)[0], "x", user=ADA, value="p:1:a")
        await asyncio.wait_for(fake.deliveries[1].acked.wait(), 5)
        assert got[-1][1].startswith("payload=")
        fake.slash(CH, ADA, "new ~/x")
        await asyncio.wait_for(fake.deliveries[2].acked.wait(), 5)
        assert "command=%2Fthreadline" in got[-1][1]
        stale = str(int(time.time()) - 600)
        status, _ = await fake.deliver_raw("{}", timestamp=stale)
        assert status == 401, "signed correctly, but too old for slack_sdk's verifier"
        status, _ = await fake.deliver_raw("{}", signature="v0=" + "0" * 64)
        assert status == 401
    finally:
        await runner.cleanup()
