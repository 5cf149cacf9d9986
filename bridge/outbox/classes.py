"""Which delivery class an outgoing message gets, from what the message is for.

The outbox delivers the lowest class first across the threads of a chat
(`storage/outbox_pick.py`): a person waiting on Claude before anything else, then a
turn's answer, then notices, then stream updates.  The class follows from the
message's `Outbound.role`, so no producer has to know the order; the old
``priority=1`` ("a stream update") is still understood as `DeliveryClass.STREAM`.
"""

from __future__ import annotations

from adapters.messages import Outbound, Role
from storage.outbox_pick import DeliveryClass

CLASS_OF_ROLE: dict[Role, DeliveryClass] = {
    "prompt": DeliveryClass.PROMPT,
    "final": DeliveryClass.FINAL,
    # a finished turn's status edit: it ends the turn's stream (Slack stops its native
    # stream on it) just before the answer, so it travels with the answer
    "done": DeliveryClass.FINAL,
    "notice": DeliveryClass.NOTICE,
    # a running turn's status message is decoration the answer or a prompt may pass
    "status": DeliveryClass.STREAM,
    "stream": DeliveryClass.STREAM,
}


def class_of(
    msg: Outbound, *, priority: int = 0, klass: DeliveryClass | None = None
) -> DeliveryClass:
    """The class of `msg`: `klass` if the producer names one; else the legacy
    `priority` 1 ("a stream update") is `STREAM`; else the role decides."""
    if klass is not None:
        return klass
    if priority >= 1:
        return DeliveryClass.STREAM
    return CLASS_OF_ROLE.get(msg.role, DeliveryClass.NOTICE)
