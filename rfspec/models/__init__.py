"""GoogLeNet model and its Caffe preprocessing."""
