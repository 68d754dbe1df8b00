"""Auditing what the model looks at: Grad-CAM against ground truth, the randomisation sanity
check, and the shortcut-bias study with its fix."""
