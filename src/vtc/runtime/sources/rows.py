"""Rows: a source's rows as conversations in Unsloth's format, each row's images opened when the row is read.

    Record(origin, answer, images=(), messages=None, index=None, frames=(), videos=())   one row, files unopened
    Rows(records, description=, instruction=, system=, resize=, window=, video=, ...)  rows[i] -> {"messages": [...]}

A row's clips (Record.videos: a video file, a folder of frames, a multi-frame DICOM / TIFF, or a tuple of frame
files) are opened with vtc.runtime.video.read_clip (plan["video"]: the sampling and the frame size) and become
``clip.part()`` -- {"type": "video", "video": [frames], "fps", "resized_height", "resized_width"} -- in the messages.

Every reader (one module a source kind, vtc.runtime.sources) makes Records; Rows turn them into messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from vtc.diagnostics import Span
from vtc.runtime.images import open_image, standardise


@dataclass(frozen=True)
class Record:
    """One row before its images are opened."""

    origin: Span
    answer: str
    images: tuple[Path, ...] = ()  # image files, in the order the row uses them
    messages: tuple | None = None  # conversation rows: messages with image parts holding indices into `images`
    index: int | None = None  # rows stored in a `datasets` dataset: the row's index in the dataset
    frames: tuple[int, ...] = ()  # the page of each image (multi-page TIFF with `tiff pages all`); () = first pages
    videos: tuple = ()  # clips, in order: a video file, a frame folder, a multi-frame file, or a tuple of frames

    def frame(self, k: int) -> int:
        return self.frames[k] if k < len(self.frames) else 0


class Rows(Sequence):
    """Rows of a data source: ``rows[i]`` is ``{"messages": [...]}`` with the images opened and standardised.

    Images are opened on each access (never the whole dataset in RAM). With ``rows.cache`` set (an
    vtc.runtime.cache.ImageCache, as validate.validate_for_run sets it), an image that preparation already
    standardised comes from the cache instead of being decoded and resized again, and a clip from the clip cache
    (vtc.runtime.cache.default_clip_cache) once it was read with the same settings.

    ``instruction``, ``system``, ``resize`` and ``window`` are the plan's (data.instruction, data.system,
    images.resize, images.window); ``video`` is plan["video"] (None: the model's family has no video, and a row
    with clips cannot be opened: VT458). Rows stored in a `datasets` dataset come through ``image_getter`` (dataset
    index -> RGB images) and, for conversations, ``messages_getter`` (dataset index -> messages with numbered
    image parts).
    """

    def __init__(self, records: Sequence[Record], *, description: str, instruction: str, system: str | None,
                 resize: dict, window: dict | None, source=None, video: dict | None = None,
                 image_getter: Callable[[int], list] | None = None,
                 messages_getter: Callable[[int], list] | None = None, cache=None):
        self._records = list(records)
        self.description = description
        self.instruction = instruction
        self.system = system
        self.resize = resize
        self.window = window
        self.video = video
        self.source = source  # the SourceInfo read, or None (no evaluation data)
        self.cache = cache
        self._image_getter = image_getter
        self._messages_getter = messages_getter

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.subset(range(len(self))[i], self.description)
        rec = self._records[i]
        if rec.messages is not None or (self._messages_getter is not None and rec.index is not None):
            return {"messages": self._conversation(rec)}
        images = self._open_images(rec)
        user = [{"type": "text", "text": self.instruction}] + [{"type": "image", "image": im} for im in images]
        user += [self._open_clip(rec, k) for k in range(len(rec.videos))]
        messages = []
        if self.system:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.system}]})
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": rec.answer}]})
        return {"messages": messages}

    def __iter__(self) -> Iterator[dict]:
        for i in range(len(self)):
            yield self[i]

    def origin(self, i: int) -> Span:
        """Where row i comes from: the data file and its line/row number, or the image file."""
        return self._records[i].origin

    def answer(self, i: int) -> str:
        """The expected answer of row i (the last assistant turn's text for conversations)."""
        return self._records[i].answer

    def question(self, i: int) -> str:
        """The question of row i as predictions.jsonl records it: the recipe's instruction, or for a conversation
        the text of its last user turn (the one the model answers; earlier turns are context). Opens no image."""
        rec = self._records[i]
        raw = rec.messages
        if raw is None and self._messages_getter is not None and rec.index is not None:
            raw = self._messages_getter(rec.index)
        if raw is None:
            return self.instruction
        for m in reversed(list(raw)):
            if m["role"] == "user":
                return "".join(p.get("text", "") for p in m["content"] if p.get("type") == "text")
        return self.instruction

    def images(self, i: int) -> list[Path]:
        """The image files of row i ([] for a row stored in a `datasets` dataset, or a text-only row)."""
        return list(self._records[i].images)

    def videos(self, i: int) -> list:
        """The clips of row i, in order: video files, frame folders, multi-frame files (Paths) or tuples of frame
        files ([] for a row without video)."""
        return list(self._records[i].videos)

    def frames(self, i: int) -> list[int]:
        """The page of each of row i's images (0 = the first page; only multi-page TIFFs have others)."""
        rec = self._records[i]
        return [rec.frame(k) for k in range(len(rec.images))]

    def in_dataset(self, i: int) -> bool:
        """Whether row i is stored in a `datasets` dataset (its images live there, not in files)."""
        return self._records[i].index is not None

    def key(self, i: int) -> tuple:
        """Row i's identity (data file, row/line, pages): the same row loaded again has the same key."""
        rec = self._records[i]
        return (rec.origin, rec.frames)

    def prompt(self, i: int) -> list[dict]:
        """Row i's messages without the final assistant answer (what generation starts from)."""
        messages = self[i]["messages"]
        last = max(j for j, m in enumerate(messages) if m["role"] == "assistant")
        return messages[:last]

    def subset(self, indices, description: str | None = None) -> "Rows":
        """The rows at ``indices`` (in that order), sharing everything else."""
        return Rows([self._records[j] for j in indices], description=description or self.description,
                    instruction=self.instruction, system=self.system, resize=self.resize, window=self.window,
                    source=self.source, video=self.video, image_getter=self._image_getter,
                    messages_getter=self._messages_getter, cache=self.cache)

    # --- internals --------------------------------------------------------------------------------------------

    def _open_file(self, rec: Record, k: int):
        """Image k of a record, standardised: from the cache when preparation stored it, else decoded now."""
        path, frame = rec.images[k], rec.frame(k)
        if self.cache is not None:
            image = _cached_image(self.cache, path, frame, self.resize, self.window)
            if image is not None:
                return image
        return standardise(open_image(path, rec.origin, frame=frame, window=self.window), self.resize)

    def _open_clip(self, rec: Record, k: int) -> dict:
        """Clip k of a record as the video part Unsloth's collator reads (vtc.runtime.video.Clip.part())."""
        if self.video is None:  # the data check reports it first (VT458); a run never gets here
            from vtc.diagnostics import VtcError
            from vtc.runtime.video import no_video_family

            raise VtcError(no_video_family(None, rec.origin))
        from vtc.runtime.video import read_clip

        # With the image cache set (a run: validate.validate_for_run), clips come from the clip cache too: decoded
        # once (by the data check, which fills it), then read as PNGs each epoch and evaluation.
        cache = True if self.cache is not None else None
        return read_clip(rec.videos[k], self.video, rec.origin, window=self.window, cache=cache).part()

    def _stored_images(self, rec: Record) -> list:
        return [standardise(im, self.resize) for im in self._image_getter(rec.index)]

    def _open_images(self, rec: Record) -> list:
        if rec.images:
            return [self._open_file(rec, k) for k in range(len(rec.images))]
        if self._image_getter is not None and rec.index is not None:
            return self._stored_images(rec)
        return []

    def _conversation(self, rec: Record) -> list[dict]:
        if rec.messages is not None:
            raw, opened = rec.messages, None
        else:
            raw = self._messages_getter(rec.index)
            opened = self._stored_images(rec) if self._image_getter is not None else []
        out = []
        if self.system and not any(m["role"] == "system" for m in raw):
            out.append({"role": "system", "content": [{"type": "text", "text": self.system}]})
        for m in raw:
            parts = []
            for part in m["content"]:
                if part["type"] == "image":
                    k = part["image"]
                    parts.append({"type": "image", "image": self._open_file(rec, k) if opened is None else opened[k]})
                elif part["type"] == "video":
                    parts.append(self._open_clip(rec, part["video"]))
                else:
                    parts.append({"type": "text", "text": part["text"]})
            out.append({"role": m["role"], "content": parts})
        return out


# (path, size, mtime) -> content digest, so that a training epoch hashes each file once per process.
_DIGESTS: dict[tuple, str] = {}


def _cached_image(cache, path: Path, frame: int, resize: dict, window: dict | None):
    from vtc.runtime.cache import digest_file, entry_key
    from vtc.runtime.prepare import settings_for

    try:
        st = path.stat()
        memo = (str(path), st.st_size, st.st_mtime_ns)
        digest = _DIGESTS.get(memo)
        if digest is None:
            digest = _DIGESTS[memo] = digest_file(path)
    except OSError:
        return None
    key = entry_key(digest, frame, settings_for(path, resize, window))
    meta = cache.meta(key)
    return cache.load(key) if meta and meta.get("ok") else None
