"""Bot API HTML parse mode: plain text plus entities, with TDLib's error messages."""

from __future__ import annotations

from dataclasses import dataclass

from tests.fakes.telegram.entities import entity_text, sort_entities, utf16_len
from tests.fakes.telegram.models import ApiError, JSONDict, bad_request

_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "a": "text_link",
    "tg-emoji": "custom_emoji",
}
_NAMED_HTML_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _decode_html_entity(text: str, i: int) -> tuple[str, int] | None:
    """Decode ``&...;`` at ``i`` like TDLib: only four names and numeric references exist."""
    j = i + 1
    if j < len(text) and text[j] == "#":
        j += 1
        is_hex = j < len(text) and text[j] in "xX"
        j += is_hex
        digits_start = j
        allowed = "0123456789abcdefABCDEF" if is_hex else "0123456789"
        while j < len(text) and text[j] in allowed:
            j += 1
        if j == digits_start or j >= len(text) or text[j] != ";":
            return None
        code = int(text[digits_start:j], 16 if is_hex else 10)
        if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return None
        return chr(code), j + 1
    while j < len(text) and text[j].isascii() and text[j].isalpha():
        j += 1
    name = text[i + 1 : j]
    if j < len(text) and text[j] == ";" and name in _NAMED_HTML_ENTITIES:
        return _NAMED_HTML_ENTITIES[name], j + 1
    return None


@dataclass
class _OpenTag:
    name: str
    start: int
    attrs: dict[str, str]


def parse_html(text: str, *, strict: bool = True) -> tuple[str, list[JSONDict]]:
    """Turn Bot API HTML into plain text and entities, failing with TDLib's error messages."""
    return _HtmlParser(text, strict).parse()


def _fail(reason: str) -> ApiError:
    return bad_request(f"can't parse entities: {reason}")


class _HtmlParser:
    """One left-to-right pass over the text; ``i`` is the read position, ``pos`` the UTF-16 write offset."""

    def __init__(self, text: str, strict: bool) -> None:
        self.text = text
        self.n = len(text)
        self.strict = strict
        self.i = 0
        self.pos = 0
        self.out: list[str] = []
        self.stack: list[_OpenTag] = []
        self.entities: list[JSONDict] = []

    def parse(self) -> tuple[str, list[JSONDict]]:
        while self.i < self.n:
            c = self.text[self.i]
            if c == "&" and self._entity():
                continue
            if c == "<":
                self._tag()
            else:
                self._emit(c)
                self.i += 1
        if self.stack:
            raise _fail(f'Can\'t find end tag corresponding to start tag "{self.stack[-1].name}"')
        return "".join(self.out), sort_entities(self.entities)

    def _byte(self, k: int) -> int:
        return len(self.text[:k].encode())

    def _emit(self, chunk: str) -> None:
        self.out.append(chunk)
        self.pos += utf16_len(chunk)

    def _at(self, chars: str) -> bool:
        return self.i < self.n and self.text[self.i] in chars

    def _skip_spaces(self) -> None:
        while self.i < self.n and self.text[self.i].isspace():
            self.i += 1

    def _read_until(self, stops: str) -> str:
        """Lower-cased text up to whitespace or one of ``stops``."""
        start = self.i
        while self.i < self.n and not self.text[self.i].isspace() and self.text[self.i] not in stops:
            self.i += 1
        return self.text[start : self.i].lower()

    def _entity(self) -> bool:
        """Emit the ``&...;`` at ``i``; False for a bare ``&`` that lenient mode keeps as a literal."""
        decoded = _decode_html_entity(self.text, self.i)
        if decoded is not None:
            self._emit(decoded[0])
            self.i = decoded[1]
            return True
        if self.strict:
            raise _fail(f'Character "&" must be escaped as "&amp;" at byte offset {self._byte(self.i)}')
        return False

    def _tag(self) -> None:
        begin = self.i
        self.i += 1
        if self._at("/"):
            self._end_tag(begin)
        else:
            self._start_tag(begin)

    def _end_tag(self, begin: int) -> None:
        if not self.stack:
            raise _fail(f"Unexpected end tag at byte offset {self._byte(begin)}")
        self.i += 1
        end_name = self._read_until(">")
        self._skip_spaces()
        if not self._at(">"):
            raise _fail(f"Unclosed end tag at byte offset {self._byte(begin)}")
        self.i += 1
        tag = self.stack.pop()
        if end_name and end_name != tag.name:
            raise _fail(
                f'Unmatched end tag at byte offset {self._byte(begin)}, expected "</{tag.name}>", found "</{end_name}>"'
            )
        _close_tag(tag, self.pos, "".join(self.out), self.stack, self.entities)

    def _start_tag(self, begin: int) -> None:
        name = self._read_until(">")
        if self.i >= self.n:
            raise _fail(f"Unclosed start tag at byte offset {self._byte(begin)}")
        if name not in _HTML_TAGS:
            raise _fail(f'Unsupported start tag "{name}" at byte offset {self._byte(begin)}')
        attrs = self._attributes(name, begin)
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise _fail(f'Tag "span" must have class "tg-spoiler" at byte offset {self._byte(begin)}')
        self.stack.append(_OpenTag(name, self.pos, attrs))

    def _attributes(self, name: str, begin: int) -> dict[str, str]:
        """The attributes of a start tag, up to and including its ``>``."""
        attrs: dict[str, str] = {}
        while True:
            self._skip_spaces()
            if self.i >= self.n:
                raise _fail(f'Unclosed start tag "{name}" at byte offset {self._byte(begin)}')
            if self._at(">"):
                self.i += 1
                return attrs
            attr = self._read_until("=>")
            self._skip_spaces()
            if not self._at("="):
                if name == "blockquote" and attr == "expandable":
                    attrs[attr] = ""
                    continue
                raise _fail(
                    f'Expected equal sign in declaration of an attribute of the tag "{name}" '
                    f"at byte offset {self._byte(begin)}"
                )
            self.i += 1
            self._skip_spaces()
            if self.i >= self.n:
                raise _fail(f'Unclosed start tag "{name}" at byte offset {self._byte(begin)}')
            attrs[attr] = self._attribute_value()

    def _attribute_value(self) -> str:
        if self._at("'\""):
            return self._quoted_value()
        token_start = self.i
        while self.i < self.n and (self.text[self.i].isalnum() or self.text[self.i] in ".-"):
            self.i += 1
        if self.i < self.n and not self.text[self.i].isspace() and self.text[self.i] != ">":
            raise _fail(f"Unexpected end of name token at byte offset {self._byte(token_start)}")
        return self.text[token_start : self.i].lower()

    def _quoted_value(self) -> str:
        quote = self.text[self.i]
        self.i += 1
        value: list[str] = []
        while self.i < self.n and self.text[self.i] != quote:
            decoded = _decode_html_entity(self.text, self.i) if self.text[self.i] == "&" else None
            if decoded is not None:
                value.append(decoded[0])
                self.i = decoded[1]
            else:
                value.append(self.text[self.i])
                self.i += 1
        self.i += 1
        return "".join(value)


def _close_tag(tag: _OpenTag, end: int, text_so_far: str, stack: list[_OpenTag], out: list[JSONDict]) -> None:
    language = tag.attrs.get("class", "")
    if tag.name == "code" and stack and stack[-1].name == "pre" and language.startswith("language-"):
        # <pre><code class="language-x"> is one "pre" entity with a language, not two entities.
        stack[-1].attrs["language"] = language.removeprefix("language-")
        return
    length = end - tag.start
    if length == 0:
        return  # TDLib drops empty entities
    entity: JSONDict = {"type": _HTML_TAGS[tag.name], "offset": tag.start, "length": length}
    if tag.name == "a":
        entity["url"] = tag.attrs.get("href") or entity_text(text_so_far, entity)
    elif tag.name == "pre" and "language" in tag.attrs:
        entity["language"] = tag.attrs["language"]
    elif tag.name == "blockquote" and "expandable" in tag.attrs:
        entity["type"] = "expandable_blockquote"
    elif tag.name == "tg-emoji":
        entity["custom_emoji_id"] = tag.attrs.get("emoji-id", "")
    out.append(entity)
