"""What every reader gets besides the source: the plan's values it uses, and where row problems go.

    Request.of(plan, split, problems) -> Request
    request.report(problems)                    row problems: collected (rows left out) or raised, 20 at most
    request.rows(records, description, info)    Rows with the plan's instruction, system prompt, resize and window
    request.file_rows(records, description, info)   the end of every file reader (empty source, TIFF pages, count)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vtc.diagnostics import Diagnostic, Span, VtcError, error
from vtc.runtime.images import TIFF_EXTENSIONS, frame_count
from vtc.runtime.sources.rows import Record, Rows

# How many row problems one error lists before "and N more".
MAX_ROW_DIAGNOSTICS = 20


@dataclass(frozen=True)
class Request:
    """The plan's values a reader uses, read as they are (a validated plan has every one), and the problem list."""

    split: str | None  # the split to read: the source's own, or "test"/"validation" (a split folder for evaluation)
    answer: dict  # data.answer: {"from": "auto" | "captions" | "folders" | "column", "column": name | None}
    image_column: str | None  # data.image_column
    instruction: str  # data.instruction
    system: str | None  # data.system
    resize: dict  # images.resize
    window: dict | None  # images.window
    tiff_pages: str  # images.tiff_pages: "first" | "all"
    problems: list | None  # row problems are appended here (those rows left out) instead of raised
    images_folder: Path | None = None  # data.images_folder resolved against base_dir (`images from folder`)
    video: dict | None = None  # plan["video"]: None for a family without video (clips are still read into rows)

    @property
    def clips(self) -> bool:
        """Whether every .dcm/.tif/.tiff file and every frame folder is a clip (the recipe has a `video` clause)."""
        from vtc.runtime.sources.clips import clip_mode

        return clip_mode(self.video)

    @classmethod
    def of(cls, plan: dict, split: str | None, problems: list | None) -> "Request":
        from vtc.runtime.sources.files import resolve

        data, images = plan["data"], plan["images"]
        folder = data["images_folder"]
        return cls(split, data["answer"], data["image_column"], data["instruction"], data["system"],
                   images["resize"], images["window"], images["tiff_pages"], problems,
                   None if folder is None else resolve(Path(plan["base_dir"]), folder), plan["video"])

    def report(self, problems: list[Diagnostic]) -> None:
        """Row problems: appended to ``self.problems`` when collecting, else raised (the first 20, then VT400)."""
        if not problems:
            return
        if self.problems is not None:
            self.problems.extend(problems)
            return
        shown = problems[:MAX_ROW_DIAGNOSTICS]
        if len(problems) > len(shown):
            shown.append(error("VT400", f"... and {len(problems) - len(shown)} more problem rows",
                               help="run `vtc check --data` on the recipe for the full list"))
        raise VtcError(shown)

    def rows(self, records: list[Record], description: str, info, **getters) -> Rows:
        return Rows(records, description=description, instruction=self.instruction, system=self.system,
                    resize=self.resize, window=self.window, source=info, video=self.video, **getters)

    def file_rows(self, records: list[Record], description: str, info) -> Rows:
        """The rows of a source read from files: an empty source is an error (unless row problems are collected:
        then its rows all had problems), and with `tiff pages all` a multi-page TIFF row becomes a row a page."""
        if not records and self.problems is None:
            raise VtcError(error("VT402", f"the dataset is empty: {description}", Span(str(info.metadata or info.path)),
                                 help="add rows (images with their answers)"))
        if self.tiff_pages == "all":
            records = _tiff_pages(records)
        n = len(records)
        return self.rows(records, f"{description} ({n} row{'s' * (n != 1)})", info)


def _tiff_pages(records: list[Record]) -> list[Record]:
    """`tiff pages all`: a row whose one image is a multi-page TIFF becomes one row a page (same answer)."""
    out = []
    for rec in records:
        if len(rec.images) == 1 and not rec.videos and rec.images[0].suffix.lower() in TIFF_EXTENSIONS:
            n = frame_count(rec.images[0])
            if n > 1:
                out.extend(Record(rec.origin, rec.answer, rec.images, rec.messages, rec.index, (k,), rec.videos)
                           for k in range(n))
                continue
        out.append(rec)
    return out
