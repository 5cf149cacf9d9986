"""Claude's questions (bridge/approvals/questions.py) as each platform shows them:
the question, every option's label and description, one button per option plus
Other… (and Done for a multi-select), within Slack's block limits, as numbered
reactions on Matrix and within Telegram's 64-byte callback data; and the answers
in the form the CLI expects."""

from __future__ import annotations

from typing import Any

from adapters.matrix.render import render as matrix_render
from adapters.slack import limits
from adapters.slack.render import render as slack_render
from bridge.approvals import questions
from tests.support.fakes.slack import check_blocks, mrkdwn_plain

RID = "aMIxHK75Ej3SdE5a"  # the broker's ids: token_urlsafe(12), 16 characters


def asked(multi: bool = False, n_options: int = 4, long: bool = False) -> dict[str, Any]:
    label = "L" * 200 if long else "SQLite"
    return {
        "questions": [
            {
                "question": "Which database should I use?" + (" really" * 300 if long else ""),
                "header": "Database",
                "multiSelect": multi,
                "options": [
                    {
                        "label": f"{label} {i}",
                        "description": f"option {i} <b>&" * (40 if long else 1),
                    }
                    for i in range(n_options)
                ],
            }
        ]
    }


def form_of(tool_input: dict[str, Any]) -> questions.Form:
    form = questions.parse(tool_input)
    assert form is not None
    return form


def test_slack_shows_the_question_options_and_buttons_within_limits() -> None:
    for long in (False, True):
        msg = questions.question_message(RID, form_of(asked(multi=True, long=long)))
        parts = slack_render(msg)
        for r in parts:
            errors, total = check_blocks(r.payload["blocks"])
            assert not errors, errors
            assert total <= limits.MAX_BLOCK_TEXT and len(r.payload["blocks"]) <= limits.MAX_BLOCKS
        blocks = [b for r in parts for b in r.payload["blocks"]]
        text = mrkdwn_plain("\n".join(b["text"]["text"] for b in blocks if b["type"] == "section"))
        buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
        labels = [b["text"]["text"] for b in buttons]
        assert len(buttons) == 6, "four options, Other…, Done"
        assert labels[-2:] == ["✏️ Other…", "✅ Done"]
        assert all(len(label) <= 75 for label in labels)
        assert [b["value"] for b in buttons][:1] == [f"q:{RID}:0:0"]
        assert len({b["action_id"] for b in buttons}) == 6
        if not long:
            assert "Database" in text and "Which database should I use?" in text
            assert "☐ 1. *SQLite 0* — option 0 <b>&" in text
            assert labels[0] == "1. SQLite 0"


def test_matrix_numbers_the_options_as_keycap_reactions() -> None:
    form = form_of(asked())
    [out] = matrix_render(questions.question_message(RID, form), ["@ada:example.org"])
    body = out.payload["content"]["body"]
    assert "Which database should I use?" in body and "option 3" in body
    keys = [k for k, _ in out.payload["buttons"]]
    assert keys == ["1️⃣", "2️⃣", "3️⃣", "4️⃣", "✏️"]
    assert [d for _, d in out.payload["buttons"]][:2] == [f"q:{RID}:0:0", f"q:{RID}:0:1"]
    assert "React 1️⃣" in body and "or reply with the number(s)" in body, "the hint says how"
    assert out.payload["content"]["m.mentions"] == {"user_ids": ["@ada:example.org"]}
    multi = form_of(asked(multi=True))
    [m] = matrix_render(questions.question_message(RID, multi))
    assert [k for k, _ in m.payload["buttons"]][-2:] == ["✏️", "✅"]


def test_button_data_fits_telegram_and_answers_are_what_the_cli_expects() -> None:
    form = form_of(
        {
            "questions": [
                asked()["questions"][0],
                asked(multi=True)["questions"][0] | {"question": "Which features?"},
            ]
        }
    )
    msg = questions.question_message(RID, form)
    assert all(len(b.data.encode()) <= 64 for row in msg.buttons for b in row)
    assert questions.choose(form, "1") == ("answered", "SQLite 1")
    questions.record(form, "SQLite 1")
    assert questions.choose(form, "d") == ("invalid", None), "Done needs a choice"
    assert questions.choose(form, "2")[0] == "toggled"
    assert questions.choose(form, "0")[0] == "toggled"
    assert questions.choose(form, "9") == ("invalid", None)
    assert questions.choose(form, "d") == ("answered", "SQLite 0, SQLite 2")
    questions.record(form, "SQLite 0, SQLite 2")
    assert form.done
    updated = questions.updated_input({"questions": []}, form)
    assert updated["answers"] == {
        "Which database should I use?": "SQLite 1",
        "Which features?": "SQLite 0, SQLite 2",
    }


def test_inputs_that_are_not_questions_are_not_parsed() -> None:
    assert questions.parse({}) is None
    assert questions.parse({"questions": "x"}) is None
    assert questions.parse({"questions": [{"question": "q", "options": []}]}) is None
    assert questions.parse({"questions": [{"question": "q", "options": [{"label": ""}]}]}) is None
    same = {"question": "q", "options": [{"label": "a"}]}
    assert questions.parse({"questions": [same, same]}) is None, "answers key on the text"


def test_option_numbers_typed_as_text() -> None:
    single, multi = form_of(asked()), form_of(asked(multi=True))
    assert questions.numbered(single, " 2 ") == "SQLite 1"
    assert questions.numbered(single, "1, 3") is None, "one choice only"
    assert questions.numbered(single, "5") is None and questions.numbered(single, "0") is None
    assert questions.numbered(single, "2 please") is None, "a sentence is a free answer"
    assert questions.numbered(multi, "3, 1") == "SQLite 0, SQLite 2"
