"""Data sources: a plan's data -> rows of conversations in Unsloth's format, images opened lazily.

One module a source kind, each with the same one function, ``read(info: SourceInfo, request: Request) -> Rows``;
load.READERS maps a kind to its module:

    imagefolder.py    a folder with metadata.jsonl|csv|parquet (Hugging Face's imagefolder: same rows, same order)
    captions.py       images with a same-named .txt caption
    classes.py        one sub-folder per class
    conversations.py  a .jsonl/.json file of {"messages": [...]} rows (several images a row, text-only rows)
    chats.py          the conversation files of other tools: sharegpt (LLaMA-Factory, ms-swift, Axolotl), llava, and
                      TRL's prompt_completion; `<image>` placeholders become image parts
    table.py          a .jsonl/.json/.csv file of flat rows (an image path column and an answer column)
    clips.py          which paths a row names are clips (video files, frame folders; with a `video` clause
                      .dcm/.tif/.tiff too); every reader above puts them in Record.videos (docs/data.md)
    hf.py             saved (save_to_disk), parquet, hub: read with `datasets` (imported only there)

and around them:

    load.py      plan -> rows: which source, the evaluation rows, the hold-out split, describe_sources (`vtc plan`)
    detect.py    what kind a folder or file is (SourceInfo), split folders
    request.py   what a reader gets from the plan (Request), row problems collected or raised
    rows.py      Record (a row before its images are opened) and Rows (the Sequence the trainer reads)
    columns.py   the answer column, answer text, the records of a table's rows
    files.py     table/JSON/CSV/parquet reading, UTF-8 text, folder listings, and the confinement rule every
                 reader opens files through (inside the data folder: VT415; regular files: VT437; sizes: VT438)

Imports pillow only; `datasets` (and pyarrow) only for the sources that need it, never torch.
"""

from vtc.runtime.sources.columns import ANSWER_COLUMNS
from vtc.runtime.sources.detect import METADATA_FILES, SPLIT_NAMES, SourceInfo, detect_source
from vtc.runtime.sources.load import describe_sources, hold_out, load_rows, run_rows, source_rows
from vtc.runtime.sources.rows import Record, Rows

__all__ = ["ANSWER_COLUMNS", "METADATA_FILES", "SPLIT_NAMES", "Record", "Rows", "SourceInfo", "describe_sources",
           "detect_source", "hold_out", "load_rows", "run_rows", "source_rows"]
