"""Files in the fake Bot API: photos humans post (each in several sizes, like Telegram), `getFile`, and
the file route `/file/bot<token>/<file_path>` that serves them (through tests.fakes.cdn.FileHost)."""

from __future__ import annotations

import io
import itertools

from aiohttp import web
from PIL import Image

from tests.fakes.cdn import FileHost
from tests.fakes.telegram.models import ApiError, BotAccount, JSONDict


def as_photo(message: JSONDict, photo: list[JSONDict]) -> None:
    """message made a photo message: its text becomes the caption, as Telegram has it."""
    text = message.pop("text", "")
    message["photo"] = photo
    if text:
        message["caption"] = text
        if "entities" in message:
            message["caption_entities"] = message.pop("entities")


class TelegramFiles:
    def __init__(self) -> None:
        self.files = FileHost()
        self._file_meta: dict[str, JSONDict] = {}  # file_id -> getFile's answer
        self._file_ids = itertools.count(1)

    def add_file(self, data: bytes, content_type: str, *, declared_size: int | None = None, **options: object) -> str:
        """A stored file; returns its file_id. `options` go to tests.fakes.cdn.FakeFile."""
        n = next(self._file_ids)
        file_id = f"AgACAgIAAxk-fake-{n}"
        path = f"photos/file_{n}.jpg"
        self.files.put(path, data, content_type, **options)
        size = len(data) if declared_size is None else declared_size
        self._file_meta[file_id] = {
            "file_id": file_id,
            "file_unique_id": f"uniq{n}",
            "file_size": size,
            "file_path": path,
        }
        return file_id

    def photo_sizes(self, *images: bytes, **options: object) -> list[JSONDict]:
        """One photo as Telegram sends it: a PhotoSize per version given (smallest first)."""
        sizes = []
        for data in images:
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
            file_id = self.add_file(data, "image/jpeg", **options)
            meta = self._file_meta[file_id]
            sizes.append(
                {**{k: meta[k] for k in ("file_id", "file_unique_id", "file_size")}, "width": width, "height": height}
            )
        return sizes

    async def _get_file(self, bot: BotAccount, p: JSONDict) -> JSONDict:
        meta = self._file_meta.get(str(p.get("file_id", "")))
        if meta is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        return dict(meta)

    async def _serve_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] not in self._bot_tokens():
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        return await self.files.serve(request.match_info["path"], request)

    def _bot_tokens(self) -> set[str]:
        raise NotImplementedError
