"""Files: images, atomic writes, meshes and pictures, data-folder paths."""
