"""The face model: 3DMM, coefficients, decoder, albedo, camera, SH lighting."""
