"""The photo application: detection, landmarks, alignment, reconstruction, rendering in the photo frame."""
