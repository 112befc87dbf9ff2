"""Mesh geometry: vertex normals (numpy and TF), CoMA mesh sampling, topology files."""
