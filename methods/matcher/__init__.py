"""Matcher (aim-uofa/Matcher, ICLR 2024): DINOv2 matching + SAM proposals, training-free."""
