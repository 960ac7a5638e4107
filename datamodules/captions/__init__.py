"""Caption data: the COCO Karpathy split (``dataset_coco.json`` and the ``cocotalk`` JSON + H5
label format), region and grid features, vocabularies, part-of-speech tags, and the V2C
annotations over MSR-VTT, each with its synthetic writer.

Modules (the dataset-neutral pieces first; video caption data reuses them):

- ``vocabulary``: ``Vocabulary`` (cocotalk ids: word ``i + 1`` is ``words[i]``, 0 is
  padding/BOS/EOS), ``build_vocabulary`` (count > 5, else ``UNK``), ``tokenize_caption``;
- ``records``: ``CaptionRecord``, what every reader returns per image or video;
- ``pos``: the offline tagger of the four module classes (0 function word, 1 noun, 2 verb,
  3 adjective);
- ``karpathy``: ``read_karpathy`` of ``dataset_coco.json``;
- ``cocotalk``: ``read_cocotalk`` / ``write_cocotalk`` / ``write_cocotalk_from_karpathy``;
- ``features``: ``RegionFeatures``, per-image ``.npz`` (key ``feat``) or ``.npy`` files;
- ``datasets``: ``CaptionDataset`` and ``CaptionCollate`` (the caption batch contract);
- ``datamodule``: ``CaptionDataModule`` (``karpathy``, ``cocotalk``, ``synthetic_coco``);
- ``synthetic``: ``write_synthetic_coco`` (``polyvision synth coco DIR``);
- ``v2c``: ``read_v2c`` of the V2C annotations (captions + intention/effect/attribute, splits,
  both vocabularies); ``v2c_features``: the precomputed appearance/motion/audio features
  (20 of 40 rows, 10-row reduction); ``v2c_datamodule``: ``V2CDataModule`` (``v2c``,
  ``synthetic_v2c``; precomputed features or decoded clips); ``synthetic_v2c``:
  ``write_synthetic_v2c`` (``polyvision synth v2c DIR``).
"""
