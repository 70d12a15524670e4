"""Recommender training: load interactions, split by time, fit BPR-MF, evaluate, register."""
