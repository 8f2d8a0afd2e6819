"""The super-resolution family (issue 15): SHSR, sequential hierarchical learning with distribution transformation
(ACM TOMM 2023), against EDSR-style baselines and MATLAB-bicubic, on real photos; PSNR/SSIM on the Y channel."""
