"""What every part of the suite shares: errors, paths and names, clock, states, version, file I/O."""
