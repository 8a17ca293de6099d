"""Clips in data rows: which paths a row names are clips (videos, frame folders, cine DICOMs, TIFF stacks).

    VIDEO_SUFFIXES                      the video files vtc reads (vtc.runtime.video's, PyAV decodes them)
    MULTI_FRAME_SUFFIXES                .dcm, .tif, .tiff: clips when the recipe has a `video` clause
    clip_mode(video) -> bool            plan["video"]["multi_frame_files"] == "clips" (the recipe has `video ...`)
    is_clip_path(path, clips) -> bool   a video file, a folder (of frames), or with ``clips`` a .dcm/.tif/.tiff
    frame_folder_problem(folder, root, where, label) -> Diagnostic | None
                                        a folder given as a clip: inside the data folder, holding image frames
    frame_files(folder) -> [Path]       the frames of a frame folder, in name order (images only)
    clip_files(source) -> [Path]        the files a clip reads (what the data fingerprint covers)

Imports nothing heavy: the decoding is vtc.runtime.video's (PyAV, imported there only when a clip is opened).
"""

from __future__ import annotations

import os
from pathlib import Path

from vtc.diagnostics import Diagnostic, Span, error

from vtc.runtime.video import VIDEO_SUFFIXES, folder_frames

MULTI_FRAME_SUFFIXES = (".dcm", ".tif", ".tiff")


def clip_mode(video: dict | None) -> bool:
    """Whether every multi-frame file (.dcm, .tif, .tiff) and every frame folder of the data is a clip: the
    recipe has a `video` clause (plan video.multi_frame_files == "clips")."""
    return video is not None and video["multi_frame_files"] == "clips"


def is_clip_path(path: Path, clips: bool = False) -> bool:
    """A path a row names that is a clip: a video file, a folder (a folder of frames), or, with ``clips`` (the
    recipe has a `video` clause), a DICOM or TIFF file (a cine loop, a TIFF stack)."""
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return True
    if clips and suffix in MULTI_FRAME_SUFFIXES:
        return True
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def frame_files(folder: Path) -> list[Path]:
    """The frames of a frame folder as vtc.runtime.video reads them: its visible image files, in name order
    (numbers as numbers; sub-folders, DICOM and other files left out). [] when the folder cannot be listed."""
    try:
        return folder_frames(folder)
    except OSError:
        return []


def frame_folder_problem(folder: Path, root: str | Path, where: Span, label: str) -> Diagnostic | None:
    """Why a folder named as a clip cannot be one (VT415 outside the data folder, links followed; VT452 no image
    frames in it), or None. Nothing is opened."""
    real = os.path.realpath(folder)
    top = os.path.realpath(root)
    if not (real == top or real.startswith(top.rstrip(os.sep) + os.sep)):
        return error("VT415", f"{label}: the folder leads outside the data folder (links followed), and vtc opens "
                              "nothing outside it", where, help="copy the frames into the data folder")
    if real == top:
        return error("VT452", f"{label}: a clip cannot be the data folder itself", where,
                     help="put the frames of each clip in a folder of their own")
    if not frame_files(folder):
        return error("VT452", f"{label}: the folder {folder.name} holds no image frames (a folder given as a "
                              "clip is read as its frames, in name order)", where,
                     help="put the clip's frames (frame_000.png, frame_001.png, ...) in the folder, or name a "
                          "video file instead")
    return None


def clip_files(source: Path | tuple) -> list[Path]:
    """The files a clip is read from: a video or multi-frame file itself, a frame folder's frames, a list of frames."""
    if isinstance(source, tuple):
        return list(source)
    if source.is_dir():
        return frame_files(source)
    return [source]


def split_clips(messages: list[dict], images: list[Path], videos: list, clips: bool) -> tuple[list, list, list]:
    """A conversation's image parts whose file is a clip (a video file named as an image, a folder, or with a
    `video` clause a .dcm/.tif/.tiff) turned into video parts: (messages, images, videos) renumbered, clips in
    the order the conversation uses them."""
    if not any(is_clip_path(p, clips) for p in images):
        return messages, images, videos
    new_images: list[Path] = []
    new_videos: list = []
    for m in messages:
        for p in m["content"]:
            if p["type"] == "image":
                path = images[p["image"]]
                if is_clip_path(path, clips):
                    new_videos.append(path)
                    p.clear()
                    p.update({"type": "video", "video": len(new_videos) - 1})
                else:
                    new_images.append(path)
                    p["image"] = len(new_images) - 1
            elif p["type"] == "video":
                new_videos.append(videos[p["video"]])
                p["video"] = len(new_videos) - 1
    return messages, new_images, new_videos
