"""Caption data: the COCO Karpathy split (``dataset_coco.json`` and the ``cocotalk`` JSON + H5
label format), region and grid features, vocabularies, part-of-speech tags, and the V2C
annotations over MSR-VTT, each with its synthetic writer."""
