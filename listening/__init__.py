"""Listening tests for hybridcodec: MUSHRA stimuli export and results analysis.

* ``python -m listening.export`` (:mod:`listening.export`, configured by
  ``conf/listening/export.yaml``) cuts excerpts, codes each one once losslessly, truncates
  and decodes it at the chosen tiers, adds the hidden reference, low-pass anchors and
  reference codecs at matched bit rates, aligns loudness (ITU-R BS.1770), blinds the file
  names and writes a manifest, a webMUSHRA configuration and a self-contained HTML page
  that runs the same test from disk.
* ``python -m listening.analyze results.csv`` (:mod:`listening.analyze`) reads webMUSHRA's
  or the page's results, post-screens assessors (ITU-R BS.1534-3) and reports mean and
  95 % confidence interval per condition as a markdown table and a plot.

Neither module is imported by the codec library; they need the ``[listening]`` extra
(pyloudnorm, matplotlib, pyyaml) and Hydra for the export.
"""
