"""Everything Reverb: table recipes, adders, datasets and priority updates."""
