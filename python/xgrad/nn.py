"""xgrad.nn: the C++ layers, optimizers, schedules, weight files and data loaders (xgrad::nn).

Layers take ``dtype=np.float32`` (default) or ``np.float64``; layers without parameters take their
precision from their input. Parameters' ``.value`` and ``.grad`` are writable NumPy views.
Classes: Module, Linear, Conv2d, MaxPool2d, AvgPool2d, Flatten, Dropout, Sigmoid, Tanh, ReLU, Softmax,
LogSoftmax, Lambda, Sequential, MLP, Parameter; optimizers SGD, Adam, AdamW; schedules StepLR,
CosineLR. Functions: save_weights, load_weights, scatter_traces, read_idx, load_idx_dataset,
epoch_order, the training helpers train_epoch, evaluate, accuracy, confusion_matrix (EpochStats,
Evaluation), gradcheck_module, the losses cross_entropy, nll_loss, mse_loss, trace_scatter_loss,
one_hot, and ``nn.init.manual_seed`` (the generator layers made without a seed draw from).
"""
from . import _xgrad

globals().update({k: getattr(_xgrad.nn, k) for k in dir(_xgrad.nn) if not k.startswith("_")})
cross_entropy = _xgrad.cross_entropy
nll_loss = _xgrad.nll_loss
mse_loss = _xgrad.mse_loss
trace_scatter_loss = _xgrad.trace_scatter_loss
one_hot = _xgrad.one_hot

__all__ = [n for n in dir() if not n.startswith("_")]
