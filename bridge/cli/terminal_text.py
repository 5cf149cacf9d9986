"""Text from the daemon made safe to print on the owner's terminal.

Everything `threadline attach` shows comes, in the end, from the model, a tool's
output or a chat message — text anyone who can influence a repository or a web page
can shape.  Printed raw, escape sequences in it would act on the terminal: OSC 52
writes the clipboard, OSC 8 hides a link's target, CSI moves the cursor to overwrite
what is shown (a permission prompt's command, say), a carriage return rewrites the
line, and a bidi override reorders it.

`clean` neutralises them without hiding anything: every C0/C1 control character
except newline and tab, DEL, and the Unicode bidi embeddings, overrides and isolates
are shown as visible placeholders (ESC as `␛`, BEL as `␇`, CR as `␍`, C1 as `\\x9b`,
bidi as `<U+202E>`), so an escape sequence is printed as inert text the owner can
read — a permission prompt's command is never shortened by what it contains.  The
one exception is colour (SGR, `ESC [ … m`), which tools commonly emit and which
carries no text: it is dropped.  `clean_event` applies `clean` to every string in
an event, keys included, before anything else looks at it.
"""

from __future__ import annotations

import re
from typing import Any, Final

_SGR: Final = re.compile(r"(?:\x1b\[|\x9b)[0-9;:]*m")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _visible(m: re.Match[str]) -> str:
    code = ord(m[0])
    if code < 0x20:
        return chr(0x2400 + code)  # the Control Pictures block: ␀ … ␟
    if code == 0x7F:
        return "␡"
    if code <= 0x9F:
        return f"\\x{code:02x}"
    return f"<U+{code:04X}>"


def clean(text: str) -> str:
    """`text` with colour codes dropped and every other control character shown as
    an inert placeholder; newlines and tabs kept."""
    return _CONTROL.sub(_visible, _SGR.sub("", text))


def clean_event(value: Any) -> Any:
    """`value` (a decoded JSON event) with `clean` applied to every string in it."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean(str(k)): clean_event(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_event(v) for v in value]
    return value


__all__ = ["clean", "clean_event"]
