"""Looking inside uploaded files: what they really are, and thumbnails for images."""
