"""``file-parser``: PDFs as text for models that cannot read files.

A ``file`` content part (``{type: "file", file: {filename, file_data: "data:application/pdf;base64,..."}}``)
becomes a text part ``"<filename>:\\n<text>"``, extracted locally with pypdf. Engines:

- ``native``: the part is left for the model when it accepts files; for a model that
  does not, the PDF is parsed locally (with a note).
- ``cloudflare-ai`` and ``pdf-text`` (deprecated, redirected): the local engine. Free.
- ``mistral-ocr``: not available here; the local engine is used, with a note. Scanned
  PDFs (images without a text layer) therefore yield no text.
- no engine: native when the model accepts files, else the local engine.

A file that is not a PDF, cannot be decoded or parsed, or is encrypted with a
password is a 400 naming the file. Only base64 data URLs are parsed; a URL
``file_data`` can go to a model with native file input but not through this parser.

Parsing is CPU work: call ``parse_files`` in a worker thread from the event loop.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
from dataclasses import dataclass, field

from openrouter_site.errors import BadRequest

from . import enabled_plugin

ENGINES = ("native", "cloudflare-ai", "pdf-text", "mistral-ocr")
LOCAL_ENGINE = "cloudflare-ai"
PDF_MIME = "application/pdf"
MAX_PAGES = 2000

# pypdf logs a warning for every oddity of a damaged file: that is the client's error, not ours.
logging.getLogger("pypdf").setLevel(logging.ERROR)


@dataclass(frozen=True, slots=True)
class FileParseResult:
    messages: list[dict]
    files_parsed: int = 0
    pages: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)


def requested_engine(plugins: object) -> str | None:
    """The ``file-parser`` plugin's ``pdf.engine``, validated; None when unset or the plugin is off."""
    entry = enabled_plugin(plugins, "file-parser")
    if entry is None:
        return None
    pdf = entry.get("pdf")
    if pdf is None:
        return None
    if not isinstance(pdf, dict):
        raise BadRequest("'plugins[file-parser].pdf' must be an object")
    engine = pdf.get("engine")
    if engine is None:
        return None
    if engine not in ENGINES:
        raise BadRequest(f"'plugins[file-parser].pdf.engine' must be one of: {', '.join(ENGINES)}")
    return engine


def has_file_parts(messages: object) -> bool:
    if not isinstance(messages, list):
        return False
    return any(_is_file_part(part) for message in messages if isinstance(message, dict) for part in _parts(message))


def parse_files(messages: list[dict], *, engine: str | None, model_supports_files: bool) -> FileParseResult:
    """Replace each PDF ``file`` part with its text unless the model reads it natively."""
    notes: list[str] = []
    if engine not in (None, *ENGINES):
        raise BadRequest(f"'plugins[file-parser].pdf.engine' must be one of: {', '.join(ENGINES)}")
    if engine in (None, "native") and model_supports_files:
        return FileParseResult(list(messages))
    if not has_file_parts(messages):
        return FileParseResult(list(messages))
    if engine == "mistral-ocr":
        notes.append("mistral-ocr is not available on this gateway; PDFs were parsed with the free local text engine")
    elif engine == "native":
        notes.append("this model does not accept files natively; PDFs were parsed with the free local text engine")
    out: list[dict] = []
    files = pages = 0
    for message in messages:
        if not isinstance(message, dict) or not any(_is_file_part(p) for p in _parts(message)):
            out.append(message)
            continue
        parts = []
        for part in message["content"]:
            if not _is_file_part(part):
                parts.append(part)
                continue
            filename, text, count = _extract(part["file"])
            files += 1
            pages += count
            if not text.strip():
                notes.append(f"{filename}: no text layer found (a scanned PDF needs OCR, which is not available here)")
            parts.append({"type": "text", "text": f"{filename}:\n{text}"})
        out.append({**message, "content": parts})
    return FileParseResult(out, files_parsed=files, pages=pages, notes=tuple(notes))


def _parts(message: dict) -> list:
    content = message.get("content")
    return content if isinstance(content, list) else []


def _is_file_part(part: object) -> bool:
    return isinstance(part, dict) and part.get("type") == "file" and isinstance(part.get("file"), dict)


def _extract(file: dict) -> tuple[str, str, int]:
    filename = file.get("filename") if isinstance(file.get("filename"), str) and file.get("filename") else "document.pdf"
    data = _decode(filename, file.get("file_data"))
    text, count = pdf_text(data, filename=filename)
    return filename, text, count


def _decode(filename: str, file_data: object) -> bytes:
    if not isinstance(file_data, str) or not file_data:
        raise BadRequest(f"File '{filename}' has no file_data; send it as a base64 data URL")
    if not file_data.startswith("data:"):
        raise BadRequest(
            f"File '{filename}': only base64 data URLs (data:application/pdf;base64,...) can be parsed; "
            "file URLs are supported only for models with native file input"
        )
    header, _, payload = file_data.partition(",")
    mime = header[5:].split(";")[0].strip().lower()
    if ";base64" not in header.lower():
        raise BadRequest(f"File '{filename}' must be base64-encoded (data:{PDF_MIME};base64,...)")
    if mime and mime != PDF_MIME:
        raise BadRequest(f"File '{filename}' is {mime}; the file parser reads PDFs only ({PDF_MIME})")
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"File '{filename}' is not valid base64") from None


def pdf_text(data: bytes, *, filename: str = "document.pdf") -> tuple[str, int]:
    """The text of each page, pages separated by a blank line, and the page count. 400 when unreadable."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PyPdfError

    if b"%PDF-" not in data[:1024]:
        raise BadRequest(f"File '{filename}' is not a PDF")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except (DependencyError, NotImplementedError, PyPdfError):
                opened = 0
            if not opened:
                raise BadRequest(f"File '{filename}' is an encrypted PDF; send it without a password")
        count = len(reader.pages)
        if count > MAX_PAGES:
            raise BadRequest(f"File '{filename}' has {count} pages; at most {MAX_PAGES} can be parsed")
        texts = [(page.extract_text() or "").strip() for page in reader.pages]
    except BadRequest:
        raise
    except FileNotDecryptedError:
        raise BadRequest(f"File '{filename}' is an encrypted PDF; send it without a password") from None
    except Exception as exc:  # pypdf raises many types for damaged files
        raise BadRequest(f"File '{filename}' could not be read as a PDF: {type(exc).__name__}") from None
    return "\n\n".join(t for t in texts if t), count
