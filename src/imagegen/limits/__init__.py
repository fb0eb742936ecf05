"""Per-key limits: requests per minute (``rate``), and the gate every create passes
(``gate``): allowed models, requests per minute, concurrent generations, images per day."""
