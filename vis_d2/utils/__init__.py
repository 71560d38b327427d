"""Helpers that the other packages share and that import none of them: ``file_io`` (complete
or untouched output files), ``video_io`` (frame readers and writers), ``precision`` (the
autocast precision of the machine), ``memory`` (a long video's heap kept flat), ``benchmark``
(per-frame timers). Import the modules themselves."""
