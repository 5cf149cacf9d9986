"""A local fake of the Telegram Bot API that the *real* python-telegram-bot talks to.

Start it, point PTB at it, and drive a "person" from the test::

    async with FakeTelegram(has_topics_enabled=True) as fake:
        app = fake.app_builder().build()           # token/base_url/base_file_url preset
        ...                                       # add handlers, initialize, start polling
        fake.user_message(42, 42, "/start")        # the person types a command
        reply = await fake.wait_for(lambda m: "Hello" in m.visible_text, chat_id=42)
        qid = fake.press_button(42, reply.message_id, "yes", from_user=42)
        await fake.wait_until(lambda: fake.callback_answer(qid))

Its modules, one concern each: `server` (the aiohttp app, lifecycle, HTTP plumbing and
`FakeTelegram` itself), `wire` (wire format), `entities`/`html_mode`/`markdown_mode`/
`formatting` (formatting rules and entity parsing), `state` (chats, messages, topics,
files), `messages`/`chats`/`updates` (the Bot API methods), `person` (the person and
the transcript), `limits` (sizes and flood limits, on the shared `..ratelimit`),
`faults` (error answers and injected faults).

What it models (over real HTTP on 127.0.0.1, a free port, aiohttp.web):

* Wire format: ``POST|GET /bot<token>/<method>`` with form-encoded bodies (every value a
  string, nested objects as JSON strings), multipart uploads, JSON bodies or a query
  string; method names case-insensitive.  Answers ``{"ok": true, "result": ...}`` or
  ``{"ok": false, "error_code": N, "description": "...", "parameters": {...}}``
  (``parameters`` only when there is one, as Telegram does — PTB reports any other
  parameter as "unknown").  Wrong token → 401 ``Unauthorized``; unknown method → 404
  ``Not Found`` (both become ``InvalidToken`` in PTB).  Files: ``GET
  /file/bot<token>/<file_path>``; every such request is logged in ``file_downloads``,
  and while ``hold_files`` is an unset event the answer waits for it (a download held
  open); a document sent with ``announce_size=False`` carries no ``file_size`` (in the
  message nor in getFile).
* Updates: ``getUpdates`` long polling (held for ``timeout`` s, ``[]`` at timeout,
  ``offset`` confirms, negative offsets, ``allowed_updates``, a second concurrent poll
  ends the first with 409 "terminated by other getUpdates request", 409 while a webhook
  is set) and webhooks (``setWebhook`` url + ``secret_token``; updates are POSTed one at
  a time, in order, with ``Content-Type: application/json`` and
  ``X-Telegram-Bot-Api-Secret-Token``; a non-2xx answer or a connection error is retried
  after ``webhook_retry_delay`` seconds; ``getWebhookInfo``).
* Methods: getMe, deleteWebhook, setWebhook, getWebhookInfo, getUpdates,
  setMyCommands/getMyCommands/deleteMyCommands, sendMessage, editMessageText,
  editMessageReplyMarkup, editMessageCaption, deleteMessage, sendMessageDraft,
  sendDocument, sendPhoto, answerCallbackQuery, createForumTopic, editForumTopic,
  closeForumTopic, reopenForumTopic, deleteForumTopic, sendChatAction, getChat, getFile,
  setMessageReaction, logOut, close.
* Formatting: real parsers for ``HTML`` (Telegram's tag subset, entities ``&lt; &gt;
  &amp; &quot;`` and numeric, tdlib's error texts "Unsupported start tag", "Unmatched end
  tag", "Can't find end tag corresponding to start tag", ...), ``MarkdownV2`` (reserved
  characters must be escaped, "Can't find end of Bold entity ...") and legacy
  ``Markdown``.  Each message keeps the raw text *and* the visible text (entities
  stripped, leading/trailing whitespace trimmed like Telegram does) plus the entities
  with UTF-16 offsets.
* Limits and strict errors: text > 4096 characters after entity parsing ("message is
  too long"), empty text, caption > 1024, callback_data outside 1..64 bytes
  (``BUTTON_DATA_INVALID``), buttons without an action, identical edits ("message is not
  modified: ..."), ``editMessageText`` without ``reply_markup`` removes the keyboard (as
  Telegram does), unknown/deleted messages ("message to edit not found", "message to
  delete not found", "message to be replied not found"), unknown chats ("chat not
  found"), blocked bot (403), unknown topics ("message thread not found"), a second or
  late (``callback_query_ttl``) ``answerCallbackQuery`` ("query is too old ..."),
  ``sendMessageDraft`` outside private chats (``TEXTDRAFT_PEER_INVALID``), topics in a
  chat that is not a forum, documents over 50 MB (413), getFile over 20 MB.
* Rate limits (:class:`RateLimits`, on by default, tunable, switchable off):
  per chat a token bucket (1 msg/s, burst 3), per group/supergroup/channel 20 per
  sliding minute, global 30/s; edits count; ``sendMessageDraft`` has its own looser
  per-chat bucket.  Over the limit → 429 "Too Many Requests: retry after N" with
  ``parameters.retry_after``; only successful calls consume budget (a 429 or a 400
  costs nothing).
* Faults: :meth:`FakeTelegram.fail_next` (status, exact description, retry_after,
  a predicate on the parameters, a delay, "applied" = the call takes effect but the
  answer is an error, i.e. a lost response; "reset" = the connection is aborted) and
  :meth:`FakeTelegram.set_outage`
  (every call → 5xx, or the port refuses connections).
* A person (Python methods, not HTTP): :meth:`user_message`, :meth:`user_photo`,
  :meth:`user_document`, :meth:`press_button`, :meth:`push_update`; and a transcript:
  :meth:`messages`, :meth:`drafts`, :meth:`chat_actions`, :meth:`topics`,
  :meth:`callback_answer`, :meth:`wait_for`, :meth:`wait_until`, ``calls``,
  ``count_429``, ``api_log``.

What it does not model: inline mode, payments, games, stickers, polls, media groups,
forwarding/copying, business connections, channels beyond "a chat with a type", admin
rights and permissions (the bot may do anything in any known chat, including post in
closed topics unless ``reject_closed_topics``), the 48-hour edit/delete windows, the
30-second lifetime of drafts, link previews, entity validation of explicitly passed
``entities``, ``https``-only webhooks / allowed ports / certificates, webhook concurrency
(``max_connections`` is stored but updates go one at a time), and the exact text of a
few errors Telegram does not document (marked "fake's wording" in the modules).  HTML is
*stricter* than the real server in one place, on purpose (an unescaped ``&`` in our
output is a bug even where Telegram forgives it): a bare
``&`` that does not start an entity is refused (tdlib keeps it literally); pass
``strict_ampersand=False`` for the real leniency.  Text length is counted in code points
after parsing and trimming.
"""

from __future__ import annotations

from .entities import EntityParseError, Parsed, utf16_len
from .errors import ApiError
from .faults import Fault
from .formatting import parse_text
from .html_mode import parse_html
from .limits import RateLimits
from .markdown_mode import parse_markdown, parse_markdown_v2
from .server import FakeTelegram
from .state import (
    TINY_PNG,
    ApiCall,
    CallbackQueryRecord,
    ChatAction,
    Draft,
    FakeMessage,
    Topic,
    Version,
    WebhookDelivery,
)

__all__ = [
    "TINY_PNG",
    "ApiCall",
    "ApiError",
    "CallbackQueryRecord",
    "ChatAction",
    "Draft",
    "EntityParseError",
    "FakeMessage",
    "FakeTelegram",
    "Fault",
    "Parsed",
    "RateLimits",
    "Topic",
    "Version",
    "WebhookDelivery",
    "parse_html",
    "parse_markdown",
    "parse_markdown_v2",
    "parse_text",
    "utf16_len",
]
