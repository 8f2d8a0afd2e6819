"""The audio-visual family (MDVAE): two-stage representation learning of talking faces with speech."""
