"""The text family (issue 18, AMI: adversarial mutual information for text generation), in progress: WordNet
definition pairs and user JSONL pairs (``wordnet``, ``pairs``), a trained subword tokenizer (``tokenizer``), GRU
seq2seq models and their decoding (``models``, ``decoding``), MLE / MMI / AMI training (``ami``) and metrics
(``metrics``) are written and tested; its params, stages, flow and command are not, so it declares no ``FAMILY``
yet."""
