"""Image quality: SSIM/PSNR, the SSIM-L1 loss, metrics and CARE-style evaluation."""
