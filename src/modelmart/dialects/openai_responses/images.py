"""``input_image`` parts: an http(s) URL or a base64 data URL in ``image_url``."""

from __future__ import annotations

import re

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import ImageBlock
from modelmart.dialects.openai_chat._validate import want_enum, want_str

_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)((?:;[^;,]*)*);base64,(.*)", re.DOTALL)


def decode_image(part: dict, param: str) -> ImageBlock:
    detail = part.get("detail")
    if detail is not None:
        want_enum(detail, f"{param}.detail", ("auto", "low", "high"))
    if part.get("file_id") is not None:
        raise InvalidRequest("Images by 'file_id' are not supported; send 'image_url'.",
                             param=f"{param}.file_id")
    url = want_str(part.get("image_url"), f"{param}.image_url", nonempty=True)
    if url.startswith(("http://", "https://")):
        return ImageBlock(url=url, detail=detail)
    m = _DATA_URL.fullmatch(url)
    if m is None or not m.group(3) or not m.group(1).startswith("image/"):
        raise InvalidRequest("Invalid image URL: expected an http(s) URL or a base64 data URL "
                             "('data:image/<type>;base64,...').", param=f"{param}.image_url")
    return ImageBlock(media_type=m.group(1), data=m.group(3), detail=detail)
