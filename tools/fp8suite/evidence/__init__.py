"""What the committed logs measured, used before a launch: speed advice and the FP8 speedup predictor."""
