"""Data preparation: frames, optical flow, LMDB databases and the pipeline that runs them."""
