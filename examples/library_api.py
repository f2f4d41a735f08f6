"""Use oral6 as a library: build components by name, train, and read the results."""

from oral6_core import registry
from oral6_core.config import TrainConfig
from oral6_core.training import fit, seed_everything


def main() -> None:
    seed_everything(0)
    bundle = registry.create("dataset", "digits").load()
    model = registry.create("model", "cnn", {"channels": [16, 32]}).build(bundle.input_shape, bundle.num_classes)
    optimizer = registry.create("optimizer", "adam", {"lr": 3e-3})
    result = fit(model, bundle, optimizer, TrainConfig(epochs=3, progress=False, checkpoint=False))
    print(f"test accuracy after {result.summary['epochs']} epochs: {result.summary['final']['test_accuracy']:.3f}")


if __name__ == "__main__":
    main()
