"""Capacity planning: GPU memory and layouts for a model (`seekserve plan`), and fleet sizing by
simulation (`seekserve plan fleet`). Nothing here needs a GPU or the weights."""
