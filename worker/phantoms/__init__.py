"""Synthetic chest radiographs with ground-truth lung and lesion masks, in the Kermany layout."""
