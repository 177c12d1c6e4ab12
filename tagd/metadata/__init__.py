"""Keywords into the photo and back, with nothing ever lost.

`MetadataWriter.read(photo)` finds a photo's keywords (MWG rule, file or sidecar);
`MetadataWriter.write(current, update)` writes the final list to every keyword field through
the safe write procedure; `MetadataWriter.revert(photo)` undoes what tagd did.
"""

from tagd.metadata.exiftool import ExifTool, ExifToolError, ExifToolMissing, check_available
from tagd.metadata.files import WriteError, is_temp_file, remove_stale_temp_files
from tagd.metadata.writer import KeywordUpdate, MetadataWriter, PhotoKeywords, WriteOptions, WriteOutcome

__all__ = [
    "ExifTool", "ExifToolError", "ExifToolMissing", "check_available", "KeywordUpdate",
    "MetadataWriter", "PhotoKeywords", "WriteError", "WriteOptions", "WriteOutcome",
    "is_temp_file", "remove_stale_temp_files",
]
