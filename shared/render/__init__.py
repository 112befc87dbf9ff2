"""Rendering: the rasterizer kernel, differentiable rendering, coefficient -> image, textures, galleries."""
