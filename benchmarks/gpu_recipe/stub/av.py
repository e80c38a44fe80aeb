"""Stand-in for PyAV on the GPU machine, which has none: the recipe's decoding stages ran on the development
machine (their provenance makes the GPU run skip them); any decode here fails loudly."""


class FFmpegError(Exception):
    pass


def open(*args, **kwargs):
    raise RuntimeError("PyAV is not installed on this machine (stub): a stage tried to decode a video")
