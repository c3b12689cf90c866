"""charnn: character-level recurrent language models (vanilla RNN, LSTM, GRU).

    import charnn
    model = charnn.load("runs/mine")          # a run folder or a checkpoint
    print(model.generate(500, prime="ROMEO:", temperature=0.8, seed=1))
"""

__version__ = "0.1.0"

from .checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from .config import TrainConfig  # noqa: E402
from .corpus import Corpus, Vocabulary, load_corpus  # noqa: E402
from .errors import CharnnError  # noqa: E402
from .gradcheck import check_gradients  # noqa: E402
from .model import Params, forward, loss_and_gradients  # noqa: E402
from .sampling import SamplingOptions, generate  # noqa: E402
from .train import Trainer, resume_trainer  # noqa: E402
from .trained import TrainedModel, load  # noqa: E402

__all__ = [
    "CharnnError", "Corpus", "Params", "SamplingOptions", "TrainConfig", "TrainedModel",
    "Trainer", "Vocabulary", "check_gradients", "forward", "generate", "load", "load_checkpoint",
    "load_corpus",
    "loss_and_gradients", "resume_trainer", "save_checkpoint",
]
