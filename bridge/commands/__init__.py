"""Chat commands: declared once in a registry (`registry.py`), parsed (`parse.py`), given a
context (`context.py`) and run (`dispatch.py`); the session, turn and help commands live
here, the feature commands in their feature modules."""
