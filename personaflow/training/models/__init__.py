"""The recommender models, one module each with its nn.Module and its learner (bpr, two_tower,
sequence, deepfm), and `fit.fit_model`, the one training loop over them."""
