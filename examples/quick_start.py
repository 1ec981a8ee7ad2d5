"""Trains the README's basic model for a few steps on generated data."""

import keras
import numpy as np

from keras_self_attention import SeqSelfAttention


def main():
    keras.utils.set_random_seed(0)
    vocabulary, length, tags = 50, 12, 5
    model = keras.Sequential(
        [
            keras.Input(shape=(None,), dtype="int32"),
            keras.layers.Embedding(vocabulary, 16, mask_zero=True),
            keras.layers.Bidirectional(
                keras.layers.LSTM(16, return_sequences=True)
            ),
            SeqSelfAttention(attention_activation="sigmoid"),
            keras.layers.Dense(tags, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, vocabulary, size=(64, length))
    tokens[:, length // 2 :] *= rng.random((64, 1)) < 0.5  # some padding
    targets = tokens % tags
    history = model.fit(tokens, targets, epochs=5, batch_size=16, verbose=0)
    for epoch, loss in enumerate(history.history["loss"], start=1):
        print(f"epoch {epoch}: loss {loss:.4f}")
    print(f"backend: {keras.backend.backend()}")


if __name__ == "__main__":
    main()
