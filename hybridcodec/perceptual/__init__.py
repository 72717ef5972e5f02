"""The perceptual side of the codec: the band-energy envelope, the psychoacoustic model,
the decoder's fill and the allocation of bits to truncation units.

* :mod:`.grid` -- the time-frequency grid: an STFT with sqrt-Hann windows and
  ERB-spaced bands above the coarse wavelet band;
* :mod:`.envelope` -- band energies on that grid, quantised and entropy-coded (a few
  kbit/s of side information that every lossy tier carries);
* :mod:`.masking` -- the encoder's masking threshold and tonality per band and slot;
* :mod:`.fill` -- the decoder's post-processor: bands a tier does not code are
  synthesised at their coded energies, coded bands are level-corrected;
* :mod:`.allocation` -- perceptual priority of every truncation unit, and the choice of
  units for a bit-rate target.
"""
