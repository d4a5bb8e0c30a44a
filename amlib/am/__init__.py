"""The adversarial-missingness paper: GLMs, implicit differentiation, mechanisms, BLAMM, victims.

Modules (one idea each): :mod:`.glm` (GLM families and weighted IRLS), :mod:`.implicit` (the
implicit argmin and its hypergradient, the paper's eq. 23), :mod:`.missingness` (mechanisms p(R|X),
partial access of eq. 24, the differentiable proxies of eqs. 8–11), :mod:`.blamm` (the bi-level
attack), :mod:`.attack` (the paper's p-value attack from its Table 4 settings),
:mod:`.modelers` (the victims: CCA, mean/regression imputation, MICE), :mod:`.causal` (the ATE
estimators of chapter 7: logistic regression, T-Net, TARNet, causal forests and doubly robust
AIPW with MIA forests), :mod:`.detection` (Little's MCAR test and missingness predictability)
and :mod:`.valuation` (KNN-Shapley and LAVA data-valuation defences).
"""
