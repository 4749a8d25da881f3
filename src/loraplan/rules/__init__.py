"""Pure rule functions: no I/O beyond reading a calibration file; every result names its source."""
