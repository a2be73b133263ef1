"""Pretrained weights: the `.caffemodel` reader (`caffe`) and the cache, download and orbax
checkpoints (`store`). `load_params` is the entry point."""
