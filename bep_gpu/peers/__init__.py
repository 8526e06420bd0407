"""The peers bep-bench times BEP against: dense_bep (the same algorithm in dense integer NumPy, no bit packing)
and qat_torch (quantisation-aware training in PyTorch: needs torch, the optional extra `[baselines]`)."""
