"""Relationship memory: what each persona remembers about each person (notes.py), how notes are
written after a conversation goes quiet (remember.py, summarise.py), and the person's commands
(commands.py)."""

from bots.core.memory.notes import SHARED, Note, NoteBook, bounded, looks_secret

__all__ = ["SHARED", "Note", "NoteBook", "bounded", "looks_secret"]
