"""From bytes to runnable code: decoding, the bounded compile helper, the artifact cache."""
