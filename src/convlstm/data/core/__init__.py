"""The shared core of the data package: recordings and the windows cut from them, the options of those windows,
splits, sampling (incl. importance weights), normalisation, transforms, collate functions, DataLoader workers and
scene cuts. Every file format and generator builds on it; it imports neither."""
