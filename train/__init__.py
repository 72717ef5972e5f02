"""Training and fitting of hybridcodec models (imports the codec library, never the reverse)."""
