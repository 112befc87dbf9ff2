"""MGC: multi-view geometry consistent self-supervised 3DMM regression (MGCNet, ECCV 2020)."""
